"""merkit's sub-commands, one module each (``register(subparsers)`` adds its parser).

:data:`COMMANDS` is the static table of names and one-line summaries: ``merkit --help`` lists
it without importing any command, and ``merkit CMD`` imports only ``merkit.commands.CMD``, so
help is instant and torch is imported only by the commands that run it."""

COMMANDS = {
    'quickstart': 'generate a synthetic corpus, extract, train DAMER, evaluate (~1-5 min)',
    'extract': 'extract Mel + cochleagram features (and encoder embeddings) into the Memo2496 layout',
    'datasets': "list the datasets merkit reads, or write one's manifest",
    'medleys': 'medleys of labelled clips with time-varying (2 Hz) targets',
    'extract-dynamic': '2 Hz frame features + time-varying labels (dynamic models)',
    'train': 'train a model (DAMER by default; see `merkit compare --list`, unified, dsaml) and report test metrics',
    'evaluate': "evaluate a trained checkpoint, or print a run's table",
    'ablate': 'train the DSAF / PCL / SAML module combinations (Table V), one table',
    'compare': 'train several models on the same splits and seeds, one table',
    'plot': 'PNG figures of a run: training curves, PCL (Fig. 5), SAML (Fig. 6), t-SNE (Fig. 7)',
    'predict': 'arousal, valence and quadrant of audio/MIDI files',
    'tag': "write arousal, valence, quadrant and mood words into the files' own tags",
    'playlist': 'an M3U8 playlist from predictions: by mood, region, mood arc or near a song',
    'adapt': 'adapt the model to one listener from a few of their own labelled tracks',
    'export': "export a model's networks to ONNX",
    'serve': 'local web page: drop a file, see its emotion and timeline',
}


def module_name(command: str) -> str:
    """``extract-dynamic`` → ``merkit.commands.extract_dynamic``."""
    return f"merkit.commands.{command.replace('-', '_')}"
