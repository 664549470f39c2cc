"""The data every part of the project reads: the manifest schema, the dataset converters, the embedded demo data,
and the collator that turns manifest rows into model inputs (training, evaluation, the Hub export and the Space all
import it from here)."""
