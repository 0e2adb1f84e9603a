"""Learned reward models trained on an overseer's preference pairs (plain Bradley-Terry RM, SARM)."""
