"""The YARA rules shipped with Stockade (``*.yar``), read by :mod:`stockade.scanning.scanners.yara`."""
