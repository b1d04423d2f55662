"""`asr transcribe` on good and bad files: one error line per bad file, the others still transcribed."""
import numpy as np
import soundfile

from asr.cli import main


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


def test_json_has_monotonic_word_times_inside_the_file(checkpoint, an4_test_wav, capsys):
    import json

    assert main(["transcribe", str(checkpoint), "--format", "json", str(an4_test_wav)]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    duration = soundfile.info(an4_test_wav).duration
    assert doc["file"] == str(an4_test_wav) and doc["text"] == " ".join(w["word"] for w in doc["words"])
    times = [(w["start"], w["end"]) for w in doc["words"]]
    assert all(0 <= a < b <= duration + 0.05 for a, b in times)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(times, times[1:]))


def test_directories_keep_their_order_and_srt_needs_an_output_dir(checkpoint, data_dir, tmp_path, capsys):
    folder = data_dir / "an4/wav/an4test_clstk/fcaw"
    assert main(["transcribe", str(checkpoint), "--with-names", str(folder)]) == 0
    names = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert names == sorted(str(p) for p in folder.glob("*.wav"))
    assert main(["transcribe", str(checkpoint), "--format", "srt", str(folder)]) == 2
    assert "--format srt with several files needs --output-dir" in capsys.readouterr().err
    assert main(["transcribe", str(checkpoint), "--format", "srt", "--output-dir", str(tmp_path / "srt"), str(folder)]) == 0
    assert len(list((tmp_path / "srt").glob("*.srt"))) == len(names)


def test_long_audio_is_cut_at_pauses_and_transcribed_in_order(checkpoint, data_dir, tmp_path):
    """A minute of AN4 test utterances with 1.5 s silences between them."""
    from asr.inference import Recognizer
    from asr.segment import speech_segments

    files = sorted((data_dir / "an4/wav/an4test_clstk").glob("*/*.wav"))[:16]
    parts, bounds, pos = [], [], 0
    silence = np.zeros(24000)
    for f in files:
        audio, _ = soundfile.read(f)
        parts += [audio, silence]
        bounds.append((pos, pos + len(audio)))
        pos += len(audio) + len(silence)
    long = np.concatenate(parts)
    assert len(long) / 16000 > 55
    pieces = speech_segments(torch_tensor(long), 16000)
    assert len(pieces) == len(files)
    for (a, b), (ua, ub) in zip(pieces, bounds):  # every piece holds exactly one utterance
        assert a <= ua + 1600 and b >= ub - 1600 and b < ub + 24000
    path = tmp_path / "long.wav"
    soundfile.write(path, long, 16000)
    ((_, transcript, error),) = Recognizer.from_checkpoint(checkpoint).transcribe_files([path])
    assert error is None
    starts = [w.start for w in transcript.words]
    assert starts == sorted(starts) and all(w.end <= len(long) / 16000 + 0.05 for w in transcript.words)


def torch_tensor(x):
    import torch

    return torch.from_numpy(x.astype("float32"))
