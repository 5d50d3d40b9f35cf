"""De-identification for anything that leaves for training: DICOM PS3.15 Annex E Basic Application Level
Confidentiality Profile, with the Retain Longitudinal Temporal Information with Modified Dates option.

* Patient name and ID become one pseudonym per patient: a keyed hash (HMAC-SHA256) of the patient ID, so
  the same patient gets the same pseudonym in every export made with the same key, and nobody without the
  key can go back.
* Dates (DA, and the date part of DT) move back by a per-patient offset (derived from the same key), so
  intervals within a patient are kept; times stay.
* UIDs (VR UI, except well-known class and syntax UIDs) are remapped to ``2.25.<hash>``: consistent within
  and across objects, so references between a SEG and its images still hold.
* Identifying attributes of the profile's table (names, addresses, institution, device serials, free
  text, ...) are removed or emptied; every private element and every other person name (PN) goes.

The key is 32 random bytes in a file (:func:`load_or_create_key`); keep it to make later exports join up.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

__all__ = ["Deidentifier", "DeidError", "load_or_create_key"]

PROFILE_CODES = (("113100", "Basic Application Confidentiality Profile"),
                 ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
MAX_SHIFT_DAYS = 3650
MIN_SHIFT_DAYS = 365

# Table E.1-1 (Basic Profile), the attributes that may appear in images, SEG and SR; X = remove, Z = empty.
_REMOVE = frozenset("""
AcquisitionComments AdditionalPatientHistory AdmittingDiagnosesDescription Allergies
Arbitrary AuthorObserverSequence BranchOfService CommentsOnThePerformedProcedureStep ConsultingPhysicianName
ContentCreatorIdentificationCodeSequence CountryOfResidence CurrentPatientLocation DerivationDescription
DeviceSerialNumber DeviceUID DischargeDiagnosisDescription EthnicGroup FrameComments GantryID
GeneratorID ImageComments ImagePresentationComments InstitutionAddress InstitutionCodeSequence
InstitutionName InstitutionalDepartmentName IssuerOfPatientID MedicalAlerts MedicalRecordLocator
MilitaryRank ModifiedAttributesSequence NameOfPhysiciansReadingStudy Occupation OperatorIdentificationSequence
OperatorsName OriginalAttributesSequence OtherPatientIDs OtherPatientIDsSequence OtherPatientNames
PatientAddress PatientAge PatientBirthName PatientBirthTime PatientComments PatientInsurancePlanCodeSequence
PatientMotherBirthName PatientReligiousPreference PatientSize PatientState PatientTelephoneNumbers
PatientWeight PerformedLocation PerformedProcedureStepDescription PerformedProcedureStepID
PerformingPhysicianIdentificationSequence PerformingPhysicianName PersonAddress PersonTelephoneNumbers
PhysicianApprovingInterpretation PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
PhysiciansReadingStudyIdentificationSequence PlateID PregnancyStatus ProtocolName
ReferringPhysicianAddress ReferringPhysicianIdentificationSequence ReferringPhysicianTelephoneNumbers
RegionOfResidence RequestAttributesSequence RequestedProcedureDescription RequestedProcedureID
RequestingPhysician RequestingService ResultsIDIssuer ScheduledProcedureStepDescription
ScheduledProcedureStepID SeriesDescription SmokingStatus SpecialNeeds StationName StudyComments
StudyDescription TextComments TextString VerifyingObserverIdentificationCodeSequence VerifyingOrganization
VisitComments AdmissionID ServiceEpisodeID ServiceEpisodeDescription PatientTransportArrangements
PatientSexNeutered ResponsibleOrganization ResponsiblePerson MedicalRecordLocator DetectorID
""".split())
_EMPTY = frozenset("""
AccessionNumber PatientBirthDate PatientSex ReferringPhysicianName StudyID ContentCreatorName VerifyingObserverName
PersonName FillerOrderNumberImagingServiceRequest PlacerOrderNumberImagingServiceRequest
""".split())
#: UIDs that name standard things, not instances: kept.
_KEEP_UID_KEYWORDS = frozenset("""
SOPClassUID ReferencedSOPClassUID MediaStorageSOPClassUID TransferSyntaxUID ImplementationClassUID
RelatedGeneralSOPClassUID OriginalSpecializedSOPClassUID CodingSchemeUID ContextUID MappingResource
SpecificCharacterSet ReferencedSOPClassUIDInFile PrivateInformationCreatorUID
""".split())


class DeidError(ValueError):
    """A key that cannot be used, or a dataset with no patient to key on."""


def load_or_create_key(path: Path | str) -> bytes:
    """The de-identification key in ``path`` (created with 32 random bytes, mode 0600, when absent)."""
    path = Path(path)
    if path.exists():
        key = path.read_bytes()
        if len(key) < 16:
            raise DeidError(f"{path}: a de-identification key needs at least 16 bytes, found {len(key)}")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fp:
        fp.write(key)
    return key


@dataclass(frozen=True)
class Deidentifier:
    """Keyed pseudonyms, date offsets and UID remapping; :meth:`deidentify` applies the profile."""

    key: bytes
    prefix: str = "ANON"

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise DeidError("a de-identification key needs at least 16 bytes")

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self.key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def pseudonym(self, patient_id: str) -> str:
        """The same ``ANON-XXXXXXXXXXXX`` for the same patient ID (and key)."""
        return f"{self.prefix}-{self._digest('patient', patient_id).hex()[:12].upper()}"

    def date_shift_days(self, patient_id: str) -> int:
        """Days every date of this patient moves back: from MIN_SHIFT_DAYS to MAX_SHIFT_DAYS."""
        n = int.from_bytes(self._digest("dates", patient_id)[:8], "big")
        return MIN_SHIFT_DAYS + n % (MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1)

    def uid(self, uid: str) -> str:
        """A remapped UID (``2.25.`` + 128 bits of the keyed hash); the same UID always maps alike."""
        return f"2.25.{int.from_bytes(self._digest('uid', uid)[:16], 'big')}"

    def hash(self, value: str) -> str:
        """A keyed hash for provenance records: joins up across exports, tells nothing without the key."""
        return self._digest("hash", value).hex()[:32]

    def shift_date(self, value: str, patient_id: str) -> str:
        """A DA value (YYYYMMDD) moved back by the patient's offset; "" for an empty or broken date."""
        value = str(value or "").strip()
        try:
            day = _dt.datetime.strptime(value[:8], "%Y%m%d").date()
        except ValueError:
            return ""
        return (day - _dt.timedelta(days=self.date_shift_days(patient_id))).strftime("%Y%m%d")

    # -- the profile ----------------------------------------------------------------------------------------
    def deidentify(self, dataset: Dataset) -> Dataset:
        """A de-identified copy of ``dataset`` (the original is left as it was)."""
        patient_id = str(dataset.get("PatientID", "") or "") or str(dataset.get("PatientName", "") or "")
        if not patient_id:
            raise DeidError("the dataset names no patient (no PatientID or PatientName) to key the pseudonym on")
        out = copy.deepcopy(dataset)
        self._walk(out, patient_id)
        pseudonym = self.pseudonym(patient_id)
        out.PatientName = pseudonym
        out.PatientID = pseudonym
        out.PatientIdentityRemoved = "YES"
        out.DeidentificationMethod = "PS3.15 E Basic; Modified Dates"  # LO: 64 characters at most; codes below
        codes = []
        for value, meaning in PROFILE_CODES:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            codes.append(item)
        out.DeidentificationMethodCodeSequence = DicomSequence(codes)
        meta = getattr(dataset, "file_meta", None)
        if meta is not None:
            out.file_meta = copy.deepcopy(meta)
            if "MediaStorageSOPInstanceUID" in meta:
                out.file_meta.MediaStorageSOPInstanceUID = self.uid(str(meta.MediaStorageSOPInstanceUID))
        return out

    def _walk(self, ds: Dataset, patient_id: str) -> None:
        for elem in list(ds):
            keyword = elem.keyword
            if elem.tag.is_private or (not keyword and elem.tag.group % 2 == 0 and elem.tag.group > 0x0008):
                del ds[elem.tag]  # private elements, and curves/overlays of unknown keyword
                continue
            if keyword in _REMOVE:
                del ds[elem.tag]
            elif keyword in _EMPTY:
                elem.value = None if elem.VR == "SQ" else ""
            elif elem.VR == "SQ":
                for item in elem.value or []:
                    self._walk(item, patient_id)
            elif elem.VR == "PN" and keyword not in ("PatientName",):
                del ds[elem.tag]
            elif elem.VR == "UI" and keyword not in _KEEP_UID_KEYWORDS and elem.value:
                elem.value = [self.uid(str(v)) for v in elem.value] if elem.VM > 1 else self.uid(str(elem.value))
            elif elem.VR == "DA" and elem.value:
                elem.value = self.shift_date(str(elem.value), patient_id)
            elif elem.VR == "DT" and elem.value:
                text = str(elem.value)
                shifted = self.shift_date(text, patient_id)
                elem.value = shifted + text[8:] if shifted else ""
