"""settlement/chains"""
