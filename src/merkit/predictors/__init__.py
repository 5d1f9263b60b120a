"""The models behind ``merkit predict``: a predictor maps the front end's views of a track to
:class:`merkit.results.Prediction` and nothing else.

* :mod:`.base`: what every predictor shares (windows, decoding, the content check, the public
  API); it imports no subclass;
* :mod:`.damer`: DAMER-family networks, one per task (``merkit train`` checkpoints);
* :mod:`.unified`: the unified model (the shipped default);
* :mod:`.dynamic`: the DSAML 2 Hz curve.

:func:`merkit.predict.load_model` picks the predictor from a model file's ``kind``.
"""
