"""R2M (arXiv 2601.22664): a reward model that reads the policy's last-layer hidden states and follows it.

A trained (plain) reward model plus a single-head cross-attention from the RM's last-token embedding to the
policy's hidden states of the response; after every policy step only the attention and the score head take
an optimiser step on GREBT. Reward type ``r2m`` (registered by name in ``rlhf_lens.rewards``): ``config``
holds its keys (torch-free), ``attention`` the cross-attention and the omega schedule, ``grebt`` the loss,
``reward`` the reward itself.
"""
