"""agentceiling.tokens"""
