"""The studies of the two imbalance papers, each a named sweep recipe plus an analysis
(``repmtl study list | recipe | analyse``); see ``docs/studies.md``."""

from __future__ import annotations

from repmtl.experiments.studies import data, distance, gridsearch, ranking, surrogate
from repmtl.experiments.studies.base import Budget, Study, StudyOutput, write_study

__all__ = ["STUDIES", "Budget", "Study", "StudyOutput", "get_study", "write_study"]

STUDIES: dict[str, Study] = {
    study.name: study
    for study in (
        Study("gridsearch", "Grid search vs AvgNorm vs dynamic weighting",
              "Guo et al., Revisit the Imbalance Optimization in Multi-task Learning, Tables VI-VII",
              gridsearch.recipe, gridsearch.analyse, "gridsearch_bars"),
        Study("data", "Data quality and quantity",
              "Guo et al., Revisit the Imbalance Optimization in Multi-task Learning, Table V",
              data.recipe, data.analyse, "data_bars"),
        Study("distance", "Feature distance to single-task models",
              "Guo et al., Revisit the Imbalance Optimization in Multi-task Learning, Fig. 6",
              distance.recipe, distance.analyse, "distance_bars"),
        Study("surrogate", "Representation-level surrogate of gradient methods",
              "Mao et al., Rethinking Resource Competition in Multi-Task Learning, Table 13",
              surrogate.recipe, surrogate.analyse, "surrogate_bars"),
        Study("ranking", "Ranking similarity of diagnostics and task metrics",
              ranking.REFERENCE, ranking.recipe, ranking.analyse, "ranking_heatmap"),
    )
}


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise KeyError(f"unknown study {name!r}; available: {', '.join(STUDIES)}")
    return STUDIES[name]
