"""The language-server front end (protocol only; the engine lives in `calibration`)."""
