"""radical.orbit.simulator"""
