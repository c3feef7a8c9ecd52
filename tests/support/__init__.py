"""Helpers shared by the tests (not tests themselves): exact toys and fake rewards."""
