"""radical.orbit.daemon"""
