"""The project's own scanners (SPEC §8), one module each; see :mod:`stockade.scanning.interfaces`.

Every scanner here is pure and stateless: the same member bytes always give the same findings, and
its ``version`` is a constant plus a hash of its rule tables, so that a rule change triggers rescans.
"""
