"""On-device AI: plugin manifests, plugin discovery and the onnxruntime runner.

Imports :mod:`workstation.model` and :mod:`workstation.dicom`; never render or ui.
"""
