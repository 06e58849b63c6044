"""agentceiling.api"""
