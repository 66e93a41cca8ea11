"""The review web page: a reward program's lineage, code, diffs, curves, preference check and rollout
videos, and a feedback form that refines it through the library (``rewardlab review``).

:func:`~rewardlab.review.app.create_app` builds the app; :mod:`~rewardlab.review.video` renders and caches
rollout videos. This package is a thin top layer: it reads the store's typed records and writes only
through :func:`rewardlab.text2reward.loop.refine`.
"""
