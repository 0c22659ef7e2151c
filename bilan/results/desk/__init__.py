"""Results in and the lab's desk: results as analysers and staff write them (the Observation
guard: a checked UCUM unit, a value a patient can have, a computed interpretation flag), results
typed by hand exam by exam, the delta check against the patient's previous result, and
technical then biological validation.

Offered to the other rooms and to the pages: the intake guard, manual entry, the results desk,
an order's validated results, its critical results still to call (`critical`), and the
vocabularies every room reads (`interpretation`:
HL7 interpretation flags; `units`: UCUM checks and conversions; `typed`: French numbers as
typed and censored values, "<0,5")."""

from bilan.results.desk import calculations, critical, interpretation, names, typed, units
from bilan.results.desk.entry import FIELDS, UNCOLLECTED, ResultEntry, Typed
from bilan.results.desk.intake import ResultsIntake
from bilan.results.desk.validation import OPEN, Previous, ResultsDesk, order_results, person_history, previous_result

__all__ = ["FIELDS", "OPEN", "Previous", "UNCOLLECTED", "calculations", "critical", "ResultEntry", "ResultsDesk", "ResultsIntake", "Typed", "interpretation", "names",
           "order_results", "person_history", "previous_result", "typed", "units"]
