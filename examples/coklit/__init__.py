"""The coklit voter-list example (installed as ``meshsync.coklit``).

*Coklit* (pencocokan dan penelitian) is the door-to-door check of the voter list by
election officers (Pantarlih). This package gives meshsync what a coklit deployment
in Kabupaten Mimika needs:

* :mod:`.schema` - the ``voters`` collection, its fields and validator; :func:`register`
* :mod:`.names` - name matching that folds apostrophes, case and Unicode forms;
  :func:`~.names.find` and :func:`~.names.duplicates`
* :mod:`.dpt_csv` - import (the baseline at central) and export of the voter list CSV
* :mod:`.sample` - a made-up, reproducible voter list for a real Mimika distrik
* :mod:`.regions`, :mod:`.codes`, :mod:`.nik` - region codes, coded values, NIK rules

* :mod:`.document` - the same rules as a schema document the root authority signs
  (``meshsync authority schema publish coklit``) and its named rules

An enrolled node validates ``voters`` with the newest signed document it holds
(:mod:`meshsync.replica.schema`). A home whose ``config.toml`` says ``schema =
"coklit"`` (older homes, and homes not enrolled) registers :class:`VoterValidator`
whenever it is opened (:func:`meshsync.host.local.open_node`); a document, once
held, takes precedence.
"""

from pathlib import Path

from meshsync.coklit.schema import COLLECTION, Rules, VoterValidator, register

from meshsync.replica.node import Node

__all__ = ["COLLECTION", "Rules", "VoterValidator", "import_file", "register"]


def import_file(node: Node, path: Path, *, batch_size: int) -> dict[str, object]:
    """The schema importer (:data:`meshsync.host.local.IMPORTER_GROUP`): import the voter list
    CSV at ``path`` into ``node`` (:func:`.dpt_csv.import_csv`); its report as JSON."""
    from meshsync.coklit.dpt_csv import import_csv

    return dict(import_csv(node, path, batch_size=batch_size).to_json())
