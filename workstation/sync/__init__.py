"""Durable sync: an SQLite outbox of DICOM objects and a worker that stores them to the archives."""
