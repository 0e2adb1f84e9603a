"""Model diffing against a known overseer: read what a policy learned back out of the two models.

Every method (one file each, registered in ``registry``) turns the base and policy models (and what the
earlier stages wrote: activation stores, SAEs, crosscoders) into a score per vocabulary token, one row
per independent unit (a prompt group of the context corpus, or a seed of anything trained); ``readouts``
scores every such table against the overseer's truth the same way.
"""
