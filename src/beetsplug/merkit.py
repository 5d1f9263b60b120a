"""A beets plugin: merkit's arousal, valence, quadrant and mood words as flexible attributes.

Install with ``pip install 'merkit[beets]'`` and add ``merkit`` to ``plugins:`` in beets' config;
then::

    beet merkit [QUERY]                 # analyse the matching items (new or changed ones only)
    beet ls quadrant:4 arousal:..0.3    # calm, quiet tracks
    beet ls -f '$title $quadrant_word $valence $arousal' mood::aggressive

Attributes: ``arousal`` and ``valence`` (P(high arousal), P(positive valence), 0..1),
``arousal_score`` and ``valence_score`` (-1..1), ``quadrant`` (1..4), ``quadrant_word``,
``mood`` (mood words), ``merkit_model`` (which model wrote them). Configuration (``merkit:`` in
beets' config): ``auto`` (analyse on import, default no), ``overwrite`` (re-analyse items that
have values, default no), ``model`` (a merkit model file; default the shipped model), ``write``
is beets' own setting (``beet merkit`` writes tags to files only when beets writes them).

The predictions come from merkit's pipeline with its result store, as ``merkit predict`` makes
them: an item whose file, the model and the settings are unchanged is not analysed again.
"""
from __future__ import annotations


from beets import ui
from beets.dbcore import types
from beets.plugins import BeetsPlugin

# three decimals in `beet ls` (beets shows one by default)
FIELDS = {"arousal": types.Float(3), "valence": types.Float(3), "arousal_score": types.Float(3),
          "valence_score": types.Float(3), "quadrant": types.INTEGER, "quadrant_word": types.STRING,
          "mood": types.STRING, "merkit_model": types.STRING}


class MerkitPlugin(BeetsPlugin):
    item_types = FIELDS

    def __init__(self) -> None:
        super().__init__()
        self.config.add({"auto": False, "overwrite": False, "model": ""})
        if self.config["auto"].get(bool):
            self.import_stages = [self.imported]

    def commands(self):
        cmd = ui.Subcommand("merkit", help="add arousal, valence, quadrant and mood (merkit)")
        cmd.parser.add_option("-f", "--force", action="store_true", default=False,
                              help="analyse items that already have merkit's values")
        cmd.func = lambda lib, opts, args: self.analyse(lib.items(args), write=ui.should_write(),
                                                        force=opts.force)
        return [cmd]

    def imported(self, session, task) -> None:
        self.analyse(task.imported_items())

    def analyse(self, items, *, write: bool = False, force: bool = False) -> int:
        """Predict and store the attributes of ``items``; the number of items updated."""
        from merkit.commands.predict import _model, _stored_results, results_in_order, track_options
        from merkit.commands.tag import _model_name
        from merkit.tags import tag_values

        overwrite = force or self.config["overwrite"].get(bool)
        items = [i for i in items if overwrite or i.get("quadrant") is None]
        if not items:
            return 0
        model_file = self.config["model"].as_str() or None
        opts = track_options([model_file] if model_file else None)
        paths = [i.path.decode() if isinstance(i.path, bytes) else str(i.path) for i in items]
        store, key, stored = _stored_results(opts, paths)
        model = _model(opts) if any(p not in stored for p in paths) else None
        name = _model_name(opts.model)
        done = 0
        for item, res in zip(items, results_in_order(opts, paths, model, store, key, stored)):
            if not res.ok:
                self._log.warning("{}: {}", res.path, res.error)
                continue
            p = res.prediction
            values = tag_values(p, name)
            item.update({"arousal": p.arousal, "valence": p.valence, "arousal_score": p.arousal_score,
                         "valence_score": p.valence_score, "quadrant": p.quadrant, "quadrant_word": p.quadrant_word,
                         "mood": p.mood_words or "", "merkit_model": values["MERKIT_MODEL"]})
            if write:
                item.try_write()
            item.store()
            done += 1
            self._log.info("{}: Q{} {} (arousal {:.2f}, valence {:.2f})", res.path, p.quadrant, p.quadrant_word,
                           p.arousal, p.valence)
        if store is not None:
            store.close()
        return done
