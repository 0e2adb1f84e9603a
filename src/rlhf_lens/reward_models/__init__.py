"""Learned reward models trained from preference pairs, and how well they agree with the overseer.

``plain``: a Bradley-Terry reward model on the base model (TRL's RewardTrainer), saved as a Hugging
Face sequence-classification folder; ``accuracy``: held-out pair accuracy and Spearman against the
overseer with CIs over prompts (shared by every reward model); ``sarm`` / ``sarm_analysis``: the
sparse-autoencoder reward model and its read-off. Every reward model lives in
``results/{run}/reward_models/{rm}/`` with an ``accuracy.json``, and is used as a reward (for RL) through
the reward type ``reward_model`` (``rlhf_lens.rewards.reward_model``), which dispatches on the folder.
Importing this package loads no torch.
"""
