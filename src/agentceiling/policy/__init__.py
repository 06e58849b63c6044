"""agentceiling.policy"""
