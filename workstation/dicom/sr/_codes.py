"""The coded concepts the SR uses, in one place (DCM, SCT, UCUM, and a few local ones)."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

# -- standard concepts -----------------------------------------------------------------------------------
PROBABILITY = Code("122157", "DCM", "Probability")
VOLUME = Code("118565006", "SCT", "Volume")
LENGTH = Code("410668003", "SCT", "Length")
AREA = Code("42798000", "SCT", "Area")
CLINICAL_FINDING = Code("404684003", "SCT", "Clinical finding")  # finding type when a label has no code
PERSON_OBSERVER_NAME = Code("121008", "DCM", "Person Observer Name")
IMAGING_MEASUREMENTS = ("126010", "DCM")
MEASUREMENT_GROUP = ("125007", "DCM")
TRACKING_ID = ("112039", "DCM")
TRACKING_UID = ("112040", "DCM")
FINDING = ("121071", "DCM")
ALGORITHM_NAME = ("111001", "DCM")
ALGORITHM_VERSION = ("111003", "DCM")
VOLUME_SURFACE = ("121231", "DCM")
IMAGE_REGION = ("111030", "DCM")
DEVICE_OBSERVER_NAME = ("121013", "DCM")
DEVICE_OBSERVER_MODEL = ("121015", "DCM")
DEVICE_OBSERVER_UID = ("121012", "DCM")
DERIVATION = ("121401", "DCM")

# -- units -----------------------------------------------------------------------------------------------
RATIO = Code("{ratio}", "UCUM", "ratio")
MM = Code("mm", "UCUM", "millimeter")
MM2 = Code("mm2", "UCUM", "square millimeter")
MM3 = Code("mm3", "UCUM", "cubic millimeter")
HU = Code("[hnsf'U]", "UCUM", "Hounsfield unit")
ARBITRARY = Code("[arb'U]", "UCUM", "arbitrary unit")
PIXEL_COUNT = Code("{pixels}", "UCUM", "pixels")

# -- ROI statistics: (concept name per modality) + derivation (CID 7464) ----------------------------------
ATTENUATION = Code("112031", "DCM", "Attenuation Coefficient")
MR_SIGNAL = Code("110852", "DCM", "MR signal intensity")
PIXEL_VALUE = Code("PIXVAL", "99WKST", "Pixel value")
DERIVATIONS = {
    "mean": Code("373098007", "SCT", "Mean"),
    "sd": Code("386136009", "SCT", "Standard Deviation"),
    "min": Code("255605001", "SCT", "Minimum"),
    "max": Code("56851009", "SCT", "Maximum"),
}
NUMBER_OF_PIXELS = Code("NPIX", "99WKST", "Number of pixels")
NO_UNITS = Code("1", "UCUM", "no units")

# -- local concepts (no standard code carries them); declared in CodingSchemeIdentificationSequence -------
LOCAL_SCHEME = "99WKST"
REVIEW_STATUS = Code("REVIEW", LOCAL_SCHEME, "Review status")
ACCEPTED = Code("ACCEPTED", LOCAL_SCHEME, "Accepted")
REJECTED = Code("REJECTED", LOCAL_SCHEME, "Rejected")
EDITED = Code("EDITED", LOCAL_SCHEME, "Edited")  # changed by the reviewer (label or box), kept in its new form
FINDING_KIND = Code("KIND", LOCAL_SCHEME, "Finding kind")
KINDS = {k: Code(k.upper(), LOCAL_SCHEME, k.capitalize()) for k in ("region", "box", "point", "classification")}
BOUNDING_BOX = Code("BBOX", LOCAL_SCHEME, "Bounding box")
SEGMENT_NUMBER = Code("SEGNUM", LOCAL_SCHEME, "Segment number in source label map")
ATTRIBUTE_PREFIX = "ATTR"  # code values of per-finding attributes (schema keys): ATTR + 12 hex of the key


def attribute_concept(key: str) -> Code:
    """The concept of a finding attribute (a label schema key); the key itself is the code meaning."""
    import hashlib

    if not key:
        raise ValueError("an attribute needs a key")
    return Code(ATTRIBUTE_PREFIX + hashlib.sha1(key.encode()).hexdigest()[:12].upper(), LOCAL_SCHEME, key[:64])


def local_scheme_item() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = LOCAL_SCHEME
    item.CodingSchemeName = "Workstation local codes"
    item.CodingSchemeResponsibleOrganization = "Workstation"
    return item


def key(code: Code) -> tuple[str, str]:
    return (code.value, code.scheme_designator)


def concept_of(item: Dataset) -> tuple[str, str]:
    """(code value, scheme) of an SR content item's concept name; ("", "") when it has none."""
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return ("", "")
    return (str(seq[0].CodeValue), str(seq[0].CodingSchemeDesignator))
