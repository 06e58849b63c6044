"""agentceiling.domain"""
