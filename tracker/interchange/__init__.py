"""Data in and out: interchange CSV, synthetic cohorts; later FHIR and DICOM."""
