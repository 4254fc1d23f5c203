"""Energy: cloud signals and tariffs, the horizon planner, the savings ledger, battery health, day replay."""
