"""Data sets on manifolds, installed as ``manifold_flows.datasets``."""
