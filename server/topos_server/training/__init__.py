"""Training loops (`topos train ...`) and the fitting steps that run with them."""
