"""FHIR R4 (4.0.1) as bilan speaks it: models, parsing, outcomes, search declarations, bundles.

Nothing here knows about the database or about Litestar.
"""
