"""radical.orbit.client"""
