"""The shaping study: the Bayesian search of the shaping weights and the comparison of schemes.

``search``: Optuna's GPSampler (log EI) over the simplex, one trial per short PPO run, resumable from
its trial files; ``runs``: one shaped PPO run and its held-out gold; ``compare``: the schemes at equal
steps (gold with CIs, steps to a threshold, KL, attribution cost); ``config``: ``rl.shaping.study``.
Above ``rl`` in the import layers (it runs RL); the shaped reward itself is ``rlhf_lens.shaping``.
"""
