"""Findings and measurements <-> DICOM SR measurement report (TID 1500, Comprehensive 3D SR), and back.

``findings_to_sr`` writes one measurement group per finding (tracking identifier and UID, finding type,
score, volume, centroid as an SCOORD3D POINT, the review decision) and one per length or ellipse
measurement, all referencing the source images; ``sr_to_findings`` reads such a report back into the
same model objects.  The observer is a person (a name) or a device (an AI model, see
:meth:`DeviceObserver.for_model`); a ``predecessor`` SR makes the new document its next revision.
"""

from workstation.dicom.sr.decode import sr_attributes, sr_person_observer, sr_to_findings
from workstation.dicom.sr.encode import DeviceObserver, SrError, findings_to_sr

__all__ = ["DeviceObserver", "SrError", "findings_to_sr", "sr_attributes", "sr_person_observer", "sr_to_findings"]
