"""Station power allocation: numba kernel, plain-Python reference, horizon planner."""
