"""The run builder: a cached evaluation reward keeps its scores in the run folder, so an evaluation that is
interrupted (or repeated on resume) does not score a sequence twice."""

from support.toy import toy_model

from vidd import build_run
from vidd.core import config as cfg
from vidd.core.seqio import read_score_journal, read_table
from vidd.rewards.base import CachedReward, FunctionReward
from vidd.tasks.custom import CustomTask
from vidd.training import FinetuneConfig


def test_a_cached_evaluation_reward_journals_its_scores_in_the_run_folder(tmp_path):
    asked = []

    def g_count(seqs):
        asked.extend(seqs)
        return [float(s.count("G")) for s in seqs]

    def task():
        return CustomTask(toy_model(), lambda seqs: [s.count("G") for s in seqs],
                          evaluation_reward=CachedReward(FunctionReward(g_count)))

    config = cfg.build(FinetuneConfig, {"iterations": 2, "steps": 4, "batch_size": 4, "accumulation": 1,
                                        "eval_every": 1, "eval_samples": 4, "final_samples": 6,
                                        "likelihood_samples": 2, "method": {"name": "vidd", "timesteps": 2}})
    run = tmp_path / "run"
    the_task = task()
    build_run(the_task, config, run, log=lambda *a: None).execute()
    journal = read_score_journal(run / "eval_scores.tsv")
    assert set(journal) == set(asked) and len(asked) == len(set(asked))  # each distinct sequence scored once
    the_task.evaluation_reward(["GGGGGGGGGGGG"])  # after the run, the task's reward no longer writes its folder
    assert read_score_journal(run / "eval_scores.tsv") == journal
    final = read_table(run / "samples" / "final.tsv")
    assert [journal[s] for s in final["sequence"]] == [float(v) for v in final["eval_reward"]]
    asked.clear()
    build_run(task(), config, run, resume=True, log=lambda *a: None).execute()  # the final evaluation again
    assert asked == [] and read_table(run / "samples" / "final.tsv") == final
