"""agentceiling.tfprovider"""
