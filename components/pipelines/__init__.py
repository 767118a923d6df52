"""The pipelines package: the two KFP pipelines and everything that compiles, runs and submits them.

- :mod:`.settings`: compile-time :class:`ClusterSettings` and how each task gets them (``configure``);
- :mod:`.stages`: the components, typed attributes of :class:`Stages`, built for an ``ImageSet``;
- :mod:`.definitions`: the training and monitoring pipelines, ``compile_pipelines``, ``check_params``;
- :mod:`.local`: ``run_local`` through kfp.local, one progress line per task;
- :mod:`.client`: a KFP endpoint: ``submit``, ``schedule``, ``unschedule``, ``upload_version``;
- :mod:`.cli`: the command line of the root ``pipeline.py``.

Pipeline parameter defaults come from the stages' Configs (``components/<stage>/config.py``).
Nothing here reads the environment when imported.
"""
