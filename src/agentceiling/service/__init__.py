"""agentceiling.service"""
