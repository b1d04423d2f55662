"""`asr transcribe` on good and bad files: one error line per bad file, the others still transcribed."""
import numpy as np
import pytest
import soundfile

from asr.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp("run")
    rc = main(["train", "-c", "recipes/an4_lstm.yaml", "--run_dir", str(run), "--data.data_dir", str(data_dir),
               "--data.max_utterances", "16", "--data.cache_dir", str(run / "cache"), "--model.hidden_size", "16",
               "--model.num_layers", "1", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
               "--trainer.accelerator", "cpu"])
    assert rc == 0
    return run / "checkpoints/last.ckpt"


def transcribe(checkpoint, files, capsys):
    rc = main(["transcribe", str(checkpoint), *map(str, files)])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err.splitlines()


def test_readable_formats_rates_and_channels(checkpoint, tone, an4_test_wav, tmp_path, capsys):
    audio, rate = soundfile.read(an4_test_wav)
    stereo_44k = tmp_path / "stereo44k.wav"
    soundfile.write(stereo_44k, np.stack([np.interp(np.arange(0, len(audio), 16000 / 44100), np.arange(len(audio)), audio)] * 2, 1), 44100)
    flac = tmp_path / "speech.flac"
    soundfile.write(flac, audio, rate)
    ogg = tmp_path / "speech.ogg"
    soundfile.write(ogg, audio, rate)
    eight_bit = tone("u8.wav", seconds=0.5, subtype="PCM_U8")
    rc, out, err = transcribe(checkpoint, [an4_test_wav, stereo_44k, flac, ogg, eight_bit], capsys)
    assert rc == 0 and err == []
    assert len(out) == 5  # one line per file, possibly empty text from an untrained model


def test_bad_files_get_one_clear_line_each_and_the_rest_still_run(checkpoint, tone, an4_test_wav, tmp_path, capsys):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFX\x00\x00\x00\x00WAVEjunkjunkjunk" * 4)
    short = tone("short.wav", seconds=0.05)
    missing = tmp_path / "missing.wav"
    rc, out, err = transcribe(checkpoint, [missing, an4_test_wav, empty, corrupt, short], capsys)
    assert rc == 1
    assert len(out) == 1  # the good file
    assert err[0] == f"error: {missing}: file not found"
    assert err[1] == f"error: {empty}: empty file (0 bytes)"
    assert err[2].startswith(f"error: {corrupt}: unreadable or corrupt audio (")
    assert err[3] == f"error: {short}: too short: 50 ms of audio, at least 100 ms needed"
    assert len(err) == 4
