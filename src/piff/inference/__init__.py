"""Inference: sampling the test set (``sampling``) and operational prediction (``predict``)."""
