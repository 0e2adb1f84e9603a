"""Preference pairs for learned reward models: sampled and labelled by a known overseer, or read from a file.

``table`` (torch-free: config validation uses it) holds the pair table's columns and the checks every
preference table passes, and reads external preference files (local parquet/CSV/JSONL, ``hf:<id>``).
``sample`` draws K responses per train prompt from the base model (and, by config, from trained
policies), pairs them, labels each pair with the overseer under a Bradley-Terry noise model and splits
the pairs by prompt into train and held-out.

Written to ``results/{run}/preferences/{overseer}/{train,heldout}.parquet`` with columns ``COLUMNS``.
"""
