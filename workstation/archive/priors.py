"""A patient's other studies in an archive (priors), newest first, on any :class:`ArchiveClient`.

Same patient means the same Patient ID and, when both studies carry one, the same Issuer of Patient ID
(two hospitals may hand out the same ID to different people).  The Patient ID is matched exactly: the
archive's query may treat ``*`` and ``?`` as wildcards or fold case, so its answers are filtered again here.
"""

from __future__ import annotations

import contextlib

from workstation.archive.client import ArchiveClient, ArchiveError, StudyQuery
from workstation.model.refs import StudyRef

_WILDCARDS = "*?"


def _issuers(archive: ArchiveClient, patient_id: str, study_uids: list[str]) -> dict[str, str]:
    """Study UID -> Issuer of Patient ID ("" when unknown), from the archive or the local files."""
    if hasattr(archive, "patient_issuers"):
        return archive.patient_issuers(patient_id)
    if not hasattr(archive, "series_files"):
        return {}
    from pydicom import dcmread

    found: dict[str, str] = {}
    for uid in study_uids:  # the embedded archive: one header per study
        with contextlib.suppress(ArchiveError, OSError, ValueError, IndexError):
            series = archive.find_series(uid)
            path = archive.series_files(series[0].series_instance_uid)[0]
            ds = dcmread(path, stop_before_pixels=True, specific_tags=["IssuerOfPatientID"])
            found[uid] = str(ds.get("IssuerOfPatientID", "") or "").strip()
    return found


def _newest_first(studies: list[StudyRef]) -> list[StudyRef]:
    dated = sorted((s for s in studies if s.study_date), key=lambda s: (s.study_date, s.study_time), reverse=True)
    return dated + [s for s in studies if not s.study_date]


def find_priors(archive: ArchiveClient, study: StudyRef) -> list[StudyRef]:
    """The other studies of ``study``'s patient in ``archive``, newest first (undated last).

    A study without a Patient ID has no priors we can trust: returns ``[]``.
    """
    patient_id = study.patient_id.strip()
    if not patient_id:
        return []
    # a Patient ID holding wildcard characters is asked for as is and filtered exactly below
    candidates = [s for s in archive.find_studies(StudyQuery(patient_id=patient_id, limit=0))
                  if s.patient_id.strip() == patient_id]
    uids = [study.study_instance_uid] + [s.study_instance_uid for s in candidates]
    issuers = _issuers(archive, patient_id, uids)
    own = issuers.get(study.study_instance_uid, "")
    priors = []
    for s in candidates:
        if s.study_instance_uid == study.study_instance_uid:
            continue
        theirs = issuers.get(s.study_instance_uid, "")
        if own and theirs and own != theirs:
            continue  # same ID, another issuer: another person
        priors.append(s)
    return _newest_first(priors)
