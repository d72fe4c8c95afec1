"""radical.orbit.ledger"""
