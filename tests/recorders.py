"""Lightning callbacks the tests add to real `asr train` runs (`--trainer.callbacks+=recorders.X`); the
tests folder is on sys.path (pytest) or PYTHONPATH (subprocess runs)."""
import json
import os
import signal

import lightning as L


class RecordBatchOrder(L.Callback):
    """Appends one JSON line per training batch to $BATCH_ORDER_LOG: rank, epoch, utterance ids."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with open(os.environ["BATCH_ORDER_LOG"], "a") as f:
            f.write(json.dumps({"rank": trainer.global_rank, "epoch": trainer.current_epoch, "ids": batch.ids}) + "\n")


class StopAfterFirstEpoch(L.Callback):
    """Stands in for an interrupted run: the schedule is longer, training stops once epoch 0 is checkpointed."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def read_batch_order(path) -> dict:
    """{(rank, epoch): [batch ids, ...]} from a $BATCH_ORDER_LOG file."""
    order: dict = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            order.setdefault((row["rank"], row["epoch"]), []).append(row["ids"])
    return order


class KillAtStep(L.Callback):
    """kill -9 of its own process once $KILL_AT_STEP optimizer steps are done (no clean-up of any kind)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)
