"""agentceiling.store"""
