# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
File-level OrcaHello detection as a transformers audio-classification pipeline.

A recording (path, bytes, array, `datasets` row, or an HLS stream: `.m3u8` playlist or folder of `.ts` segments) is
cut into 2-second windows every second, exactly as production OrcaHello does; the windows are featurized in blocks,
scored in batches (across files too), and the per-window probabilities are aggregated into production's file-level
decision. Reading the audio and cutting the windows is `audio_orcahello`'s job, building each recording's result
`results_orcahello`'s; this module is the pipeline that runs them around the model.
"""

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import logging

try:
    from .audio_orcahello import (
        FRONTEND_BLOCK_WINDOWS,
        AudioInputError,
        featurize_windows,
        open_recording,
        recording_info,
        scoring_windows,
        whole_recording_audio,
    )
    from .configuration_orcahello import config_inference_settings, resolve_inference_settings
    from .feature_extraction_orcahello import OrcaHelloFeatureExtractor
    from .results_orcahello import DecisionParameters, build_file_result
    from .scoring_orcahello import (
        BFLOAT16_LOGIT_MARGINS,
        build_scorer,
        largest_logit_deviation,
        padded_frames,
        rescore_until_exact,
        resolve_engine,
        weights_version,
    )
    from .vocabulary_orcahello import DEFAULT_BATCH_SIZE, ENGINES, PRECISIONS, fixed_mmap_threshold
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from audio_orcahello import (
        FRONTEND_BLOCK_WINDOWS,
        AudioInputError,
        featurize_windows,
        open_recording,
        recording_info,
        scoring_windows,
        whole_recording_audio,
    )
    from configuration_orcahello import config_inference_settings, resolve_inference_settings
    from feature_extraction_orcahello import OrcaHelloFeatureExtractor
    from results_orcahello import DecisionParameters, build_file_result
    from scoring_orcahello import (
        BFLOAT16_LOGIT_MARGINS,
        build_scorer,
        largest_logit_deviation,
        padded_frames,
        rescore_until_exact,
        resolve_engine,
        weights_version,
    )
    from vocabulary_orcahello import DEFAULT_BATCH_SIZE, ENGINES, PRECISIONS, fixed_mmap_threshold

logger = logging.get_logger(__name__)


def model_feature_extractor(model_path):
    """
    The feature extractor of the model at `model_path` (its folder's or Hub repo's `preprocessor_config.json`); the
    default settings only for a model built in memory (no path). A model whose settings cannot be loaded is refused
    with a one-line error naming it: scoring with settings it was not saved with would give wrong numbers silently.
    """
    if not model_path:
        return OrcaHelloFeatureExtractor()
    try:
        return OrcaHelloFeatureExtractor.from_pretrained(model_path)
    except Exception as error:  # a missing file, bad JSON, a bad value: transformers raises several kinds
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(
            f"{model_path}: cannot load the model's feature extractor settings (preprocessor_config.json): {reason}"
        ) from None


class OrcaHelloAudioClassificationPipeline(ChunkPipeline):
    """
    Killer-whale call detection over whole recordings, as production OrcaHello does it.

    ```python
    >>> from transformers import pipeline
    >>> detector = pipeline("audio-classification", model="orcasound/orcahello-srkw-detector-v1", trust_remote_code=True)
    >>> detector("hydrophone_minute.wav")                       # [{'label': 'positive', 'score': 0.87}, ...]
    >>> detector("hydrophone_minute.wav", return_timestamps=True)["local_predictions"]
    ```

    Inputs: a file path (WAV, FLAC, OGG, MP3), the bytes of such a file, a numpy array or torch tensor with
    `sampling_rate=`, a dict `{"array" or "raw", "sampling_rate"}` (a `datasets` Audio row), or a list of any of
    these. Any sample rate from 20 kHz up (`MIN_SAMPLING_RATE`), mono or multichannel, integer or float samples.

    HLS (what Orcasound hydrophones stream; needs `pip install av`): an `.m3u8` playlist (a path or an http(s) URL),
    a folder of `.ts` segments (ordered by the number in their names) or one `.ts` segment. The segments are decoded
    as one continuous AAC stream and converted to 16-bit PCM exactly as production's `ffmpeg -i clip.ts clip.wav`
    does, then scored as one recording. The start is absolute UTC from `#EXT-X-PROGRAM-DATE-TIME`, else from a
    folder named by a Unix epoch (Orcasound's `<node>/hls/<epoch>/`); otherwise no UTC is given. Gaps between or
    inside segments (missing segment numbers, `#EXT-X-DISCONTINUITY`, `#EXT-X-GAP`, program-date-time or timestamp
    jumps) are reported in `gaps` and `warnings`: the audio either side is butted together, as production's
    concatenation of the segments it has does, and windows that span a gap are flagged `spans_gap`; UTC times after a
    gap include what is missing (null where that is unknown).

    Call parameters (defaults from the model config: its preset, `"fastai"` = production's settings, or `"v1"`):
        preset (`str`):
            `"fastai"` (production 2020-2026) or `"v1"` (upstream's PyTorch port with its shipped config.yaml): sets
            every field below at once, from `configuration_orcahello.INFERENCE_PRESETS`; fields given with the same
            call override it. The result's `preset` and `parameters` record what was used.
        window_seconds (`float`, 2.0 / 3.0 for v1), hop_seconds (`float`, 1.0 / 2.0 for v1):
            How the recording is cut. Only whole windows are scored (production's `floor(duration) - 1` windows).
        whole_recording_frontend, peak_normalize, strict_segments, smoothing (`bool`):
            The port's whole-recording resampling, peak normalisation and millisecond segment cutting, its
            partial last segment (`strict_segments=False`), and production's smoothing into one-second rows; see
            `OrcaHelloConfig`.
        aggregation (`str`, `"orcahello"`):
            `"orcahello"` (production), `"mean_thresholded"` or `"mean_top_k"` (the upstream port); see
            `results_orcahello.aggregate_windows`.
        local_threshold (`float`, 0.5), global_count_threshold (`int`, 3), global_threshold (`float`, 0.6),
        top_k_windows (`int`, 3):
            Decision thresholds, see `results_orcahello.aggregate_windows`.
        min_global_confidence (`float`, 0.0):
            A floor on the file's global confidence (0-1 scale, i.e. production's 0-100 value / 100): a recording
            is positive when the aggregation's rule says so **and** its global confidence reaches the floor (see
            `results_orcahello.apply_confidence_floor`; `orcahello calibrate` fits one per hydrophone). 0 keeps
            production's decision.
        return_timestamps (`bool`, False):
            Return the full result dict (production's keys, windows, rows and merged detections) instead of the
            `[{"label", "score"}]` list. It always has `start_time_utc` (ISO 8601 `...Z`, or None when the input
            does not say when it started) and `gaps` (empty but for HLS); when the start is known, windows,
            submission rows and detections carry UTC times too (`start_utc`/`end_utc`, `start_time_utc`).
        top_k (`int`, *optional*):
            Keep only the first `top_k` entries of the label list.
        sampling_rate (`int`):
            Sample rate of array inputs. Every input must be sampled at `MIN_SAMPLING_RATE` (20 kHz) or more.
        allow_other_hosts (`bool`, False):
            HLS over HTTP: fetch segments, and follow redirects, on hosts other than the playlist's (refused by
            default: a playlist must not make us fetch from anywhere it likes).
        batch_size (`int`, 8 on CPU, 32 on GPUs):
            Windows per forward pass, across files when a list is given.
        engine (`str`, `"auto"`):
            `"openvino"`, `"onnxruntime"`, `"torch"`, or `"auto"`: on CPU with a float32 model, OpenVINO when it is
            installed (the fastest faithful engine; probabilities within ~1e-5 of PyTorch), else ONNX Runtime, else
            PyTorch; PyTorch on GPUs. Every engine skips the work that the spectrogram's padding alone determines
            (see `scoring_orcahello.PaddingSkippingClassifier`).
        precision (`str`, `"float32"`):
            `"bfloat16"` (CPUs with native bfloat16, avx512_bf16 or AMX, else refused; GPUs): the fast mode, with
            float32's decisions: every window is scored in bfloat16, then every window whose score could change a
            local or global decision, given a measured bound on bfloat16's error
            (`scoring_orcahello.BFLOAT16_LOGIT_MARGINS`, per engine), is scored again in float32
            (`scoring_orcahello.windows_to_rescore`). The confidences of the windows not re-scored stay
            bfloat16-valued (within the margin of float32's), and each window's spectrogram is kept until its
            file's end (about 160 kB a window). Every re-scored window checks the bound: if one deviates by more
            than half the margin, the pipeline warns and scores in float32 from then on (and the whole file again,
            if the margin itself was exceeded); `fast_mode_withdrawn` then says why. `"float16"` (GPUs): reduced precision without that guarantee.
            Production's numbers are float32.

    Default output: `[{"label": decision, "score": s}, {"label": other, "score": 1 - s}]`, the file-level decision
    first. The positive score is the file's global confidence on a 0..1 scale (production's `whaleFoundConfidence` /
    100 for `"orcahello"`), which can be high on a negative file whose positive seconds are fewer than
    `global_count_threshold`.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.feature_extractor is None:
            # transformers 4.51 does not hand a remote-code feature extractor to the pipeline.
            self.feature_extractor = model_feature_extractor(self.model.name_or_path)
        if self._batch_size is None:
            self._batch_size = DEFAULT_BATCH_SIZE["cpu" if self.device.type == "cpu" else "other"]
        self._scorers = {}
        # Why the bfloat16 fast mode was given up (its error bound failed a check), or None while it holds.
        self.fast_mode_withdrawn = None
        # The fraction of the last file's windows scored again in float32 by the fast mode (None outside it).
        self.last_rescored_fraction = None
        # Convolutions run markedly faster on channels-last tensors on CUDA; the weights keep their values, and
        # save_pretrained still writes them normally. (On CPU the exported engines choose their own layouts.)
        self._channels_last = self.device.type == "cuda"
        if self._channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _sanitize_parameters(
        self,
        sampling_rate=None,
        preset=None,
        window_seconds=None,
        hop_seconds=None,
        whole_recording_frontend=None,
        peak_normalize=None,
        strict_segments=None,
        smoothing=None,
        aggregation=None,
        local_threshold=None,
        global_count_threshold=None,
        global_threshold=None,
        top_k_windows=None,
        min_global_confidence=None,
        return_timestamps=None,
        top_k=None,
        function_to_apply=None,
        engine=None,
        precision=None,
        allow_other_hosts=None,
        progress_callback=None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(f"Unknown argument(s) for the OrcaHello pipeline: {sorted(kwargs)}")
        if function_to_apply not in (None, "softmax"):
            raise ValueError("The OrcaHello pipeline scores windows with softmax; function_to_apply must be 'softmax'")
        config = self.model.config
        # The inference fields: the model folder's config (its preset, as saved), replaced whole by a `preset` given
        # with the call, then each field given with the call (see `configuration_orcahello.INFERENCE_PRESETS`).
        preset_name, settings, overridden = resolve_inference_settings(
            config_inference_settings(config),
            preset=preset,
            window_seconds=window_seconds,
            hop_seconds=hop_seconds,
            whole_recording_frontend=whole_recording_frontend,
            peak_normalize=peak_normalize,
            strict_segments=strict_segments,
            smoothing=smoothing,
            aggregation=aggregation,
            local_threshold=local_threshold,
            global_count_threshold=global_count_threshold,
            global_threshold=global_threshold,
            top_k_windows=top_k_windows,
        )
        preprocess_params = {
            name: settings[name]
            for name in (
                "window_seconds",
                "hop_seconds",
                "whole_recording_frontend",
                "peak_normalize",
                "strict_segments",
            )
        }
        if sampling_rate is not None:
            preprocess_params["sampling_rate"] = sampling_rate
        if allow_other_hosts is not None:
            preprocess_params["allow_other_hosts"] = bool(allow_other_hosts)

        floor = (
            getattr(config, "min_global_confidence", 0.0) if min_global_confidence is None else min_global_confidence
        )
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0.0 <= floor <= 1.0:
            raise ValueError(
                f"min_global_confidence must be a number from 0 to 1 (global confidence / 100), got {floor!r}"
            )
        postprocess_params = {
            "decision": DecisionParameters.from_mapping({**settings, "min_global_confidence": float(floor)}),
            "return_timestamps": False,
            "top_k": None,
            "inference": {"preset": preset_name, "overridden": overridden, **settings},
        }
        for name, value in (("return_timestamps", return_timestamps), ("top_k", top_k)):
            if value is not None:
                postprocess_params[name] = value
        forward_params = {}
        if engine is not None:
            if engine not in ENGINES:
                raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
            forward_params["engine"] = engine
        if precision is not None:
            if precision not in PRECISIONS:
                raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
            forward_params["precision"] = precision
        if progress_callback is not None:  # called with (windows just scored, the recording's windows)
            forward_params["progress_callback"] = progress_callback
        return preprocess_params, forward_params, postprocess_params

    def get_inference_context(self):
        return torch.inference_mode

    def score_input_features(self, input_features, engine=None, precision=None):
        """
        Per-window `[P(negative), P(positive)]` of a batch of model inputs (`(windows, 1, 256, 312)`, as
        `featurize_windows` makes them), as a float32 `(windows, 2)` CPU tensor, scored in one forward pass by the
        engine the pipeline itself uses (`engine`, `precision` as the call parameters; the pipeline's own settings
        when None). `orcahello batch` scores through this, so that it always runs whatever engine a pipeline call
        would.
        """
        input_features = torch.as_tensor(input_features)
        if self.dtype is not None:
            input_features = input_features.to(self.dtype)
        count = input_features.shape[0]
        forward_params = dict(self._forward_params)
        forward_params.update(self._sanitize_parameters(engine=engine, precision=precision)[1])
        # `forward` places the inputs on the device under the inference context, then `_forward` scores them; the
        # per-window bookkeeping it carries through for `postprocess` is not needed here, so it gets placeholders.
        model_inputs = {
            "input_features": input_features,
            "window_index": torch.arange(count),
            "window_is_silent": torch.zeros(count, dtype=torch.bool),
            "recording": None,
            "is_last": False,
        }
        return self.forward(model_inputs, **forward_params)["probabilities"]

    def preprocess(
        self,
        inputs,
        sampling_rate=None,
        window_seconds=2.0,
        hop_seconds=1.0,
        whole_recording_frontend=False,
        peak_normalize=False,
        strict_segments=True,
        allow_other_hosts=False,
    ):
        recording = open_recording(inputs, sampling_rate=sampling_rate, allow_other_hosts=allow_other_hosts)
        try:
            bounds = scoring_windows(
                recording,
                window_seconds,
                hop_seconds,
                whole_recording_frontend=whole_recording_frontend,
                strict_segments=strict_segments,
                model_sampling_rate=self.feature_extractor.sampling_rate,
            )
        except AudioInputError:
            recording.close()
            raise
        if whole_recording_frontend:
            recording = whole_recording_audio(recording, self.feature_extractor, peak_normalize=peak_normalize)
        info = recording_info(recording, len(bounds), window_seconds, hop_seconds)

        # On a GPU the STFT and the mel filterbank run there too (resampling stays with scipy, as production's).
        frontend_device = self.device if self.device.type != "cpu" else None

        def featurize(position):
            block = bounds[block_starts[position] : block_starts[position + 1]]
            return featurize_windows(recording, block, self.feature_extractor, dtype=self.dtype, device=frontend_device)

        # Small blocks: the model starts on its first batch soon, and every buffer stays small (see
        # `vocabulary_orcahello.return_large_buffers_to_the_system`). Each window is featurized on its own: how
        # windows are grouped does not change a single value.
        block_starts = list(range(0, len(bounds), FRONTEND_BLOCK_WINDOWS)) + [len(bounds)]
        # The next block is featurized in a background thread while the model scores this one: resampling, the
        # STFT and the engines all release the GIL, so the frontend mostly hides behind the model.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orcahello-frontend")
        try:
            pending = executor.submit(featurize, 0)
            for position, block_start in enumerate(block_starts[:-1]):
                features, silent = pending.result()
                if position + 2 < len(block_starts):
                    pending = executor.submit(featurize, position + 1)
                for offset in range(features.shape[0]):
                    window_index = block_start + offset
                    yield {
                        "input_features": features[offset : offset + 1],
                        "window_index": torch.tensor([window_index]),
                        "window_is_silent": torch.tensor([silent[offset]]),
                        "recording": info,
                        "is_last": window_index == len(bounds) - 1,
                    }
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            recording.close()

    def _forward(self, model_inputs, engine="auto", precision="float32", progress_callback=None):
        if precision == "bfloat16" and self.fast_mode_withdrawn:
            precision = "float32"  # these windows are then exact as they are: postprocess re-scores none of them
        logits = self.window_logits(model_inputs["input_features"], engine=engine, precision=precision)
        if progress_callback is not None:
            info = model_inputs["recording"]
            info = info[0] if isinstance(info, (list, tuple)) else info
            progress_callback(int(logits.shape[0]), info["num_windows"] if isinstance(info, dict) else None)
        outputs = {
            "probabilities": torch.softmax(logits.float(), dim=-1),
            "window_index": model_inputs["window_index"],
            "window_is_silent": model_inputs["window_is_silent"],
            "recording": model_inputs["recording"],
            "is_last": model_inputs["is_last"],
        }
        if precision == "bfloat16":
            # The fast mode keeps each window's spectrogram up to its padding (about 160 kB) until the file's
            # decisions are known: postprocess scores again in float32 those that could change one.
            features = model_inputs["input_features"]
            content = max(1, padded_frames(features, float(self.feature_extractor.padding_value)))
            outputs["rescoring_features"] = features[..., :content].to("cpu", torch.float32).clone()
            # The engine "auto" stood for: its margin applies, and it scores these windows again in float32.
            resolved = resolve_engine(engine, self.device, getattr(self.model, "dtype", torch.float32), precision)
            outputs["rescoring_engine"] = torch.full((features.shape[0],), ENGINES.index(resolved))
        return outputs

    def window_logits(self, input_features, engine="auto", precision="float32"):
        """Logits `(batch, 2)` of a batch of spectrograms `(batch, 1, 256, 312)`, from the engine's scorer."""
        return self.scorer(input_features, engine=engine, precision=precision)(input_features)

    def scorer(self, input_features, engine="auto", precision="float32"):
        """
        The scorer for batches shaped like `input_features`: built on first use (an ONNX export for OpenVINO and
        ONNX Runtime takes a few seconds for ResNet50), kept per engine, precision, thread count and padding
        geometry, and built again when the weights have changed in place since (e.g. fine-tuning).
        """
        model_dtype = getattr(self.model, "dtype", torch.float32)
        engine = resolve_engine(engine, self.device, model_dtype, precision)
        content_frames = None
        if not self.model.training:
            # Padding is skipped when the batch has some: always, for 2-second windows from the feature extractor.
            frames = padded_frames(input_features, float(self.feature_extractor.padding_value))
            if frames < input_features.shape[-1]:
                content_frames = frames
        threads = torch.get_num_threads()
        key = (engine, precision, tuple(input_features.shape[1:]), threads, content_frames is not None)
        scorer = self._scorers.get(key)
        version = weights_version(self.model)
        # A scorer that skips the padding after frame n serves any batch whose padding starts at n or earlier.
        covers = scorer is not None and (content_frames is None or content_frames <= scorer.content_frames)
        if not covers or scorer.weights_version != version:
            scorer = build_scorer(
                self.model,
                engine,
                tuple(input_features.shape),
                threads,
                precision=precision,
                content_frames=content_frames,
                padding_value=float(self.feature_extractor.padding_value),
                channels_last=self._channels_last,
                process_mmap_threshold=fixed_mmap_threshold(),
            )
            scorer.weights_version = version
            scorer.content_frames = content_frames
            self._scorers[key] = scorer
        return scorer

    def _rescored_in_float32(self, ordered_outputs, window_confidences, **decision_parameters):
        """The fast mode's window probabilities, float32 wherever bfloat16 could change a decision (see
        `scoring_orcahello.windows_to_rescore`); the others stay bfloat16-valued."""
        fast = [output for output in ordered_outputs if "rescoring_features" in output]
        engine = ENGINES[int(fast[0]["rescoring_engine"].reshape(-1)[0])]
        margin = BFLOAT16_LOGIT_MARGINS[engine]
        # Windows of a batch scored after the fast mode was withdrawn are float32 already.
        exact = np.array(["rescoring_features" not in output for output in ordered_outputs])
        extractor = self.feature_extractor

        def score_in_float32(indices):
            probabilities = []
            for start in range(0, len(indices), self._batch_size):
                chosen = [ordered_outputs[i]["rescoring_features"] for i in indices[start : start + self._batch_size]]
                features = torch.full(
                    (len(chosen), 1, extractor.feature_size, extractor.num_frames),
                    float(extractor.padding_value),
                    dtype=self.dtype or torch.float32,
                )
                for row, content in enumerate(chosen):
                    features[row, ..., : content.shape[-1]] = content.reshape(features.shape[1:-1] + (-1,))
                logits = self.window_logits(features.to(self.device), engine=engine, precision="float32")
                probabilities.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu())
            return torch.cat(probabilities).double().numpy()

        probabilities, rescored = rescore_until_exact(window_confidences, score_in_float32, margin=margin,
                                                      exact=exact, **decision_parameters)  # fmt: skip
        # The margin is a measured bound, so check it wherever both scores exist: the windows nearest a threshold.
        deviation = largest_logit_deviation(window_confidences[rescored], probabilities[rescored])
        if deviation > margin / 2:
            self.fast_mode_withdrawn = (
                f"a window's bfloat16 logit deviated from float32's by {deviation:.2f}, more than half the fast "
                f"mode's margin of {margin} for engine {engine!r}: these weights need a margin measured for them "
                "(benchmarks/fast_mode_margin.py); scoring in float32 from now on"
            )
            logger.warning(self.fast_mode_withdrawn)
            if deviation > margin:  # the bound itself failed: no bfloat16 score of this file can be trusted
                remaining = np.flatnonzero(~rescored & ~exact)
                if remaining.size:
                    probabilities[remaining] = score_in_float32(remaining)
                rescored[remaining] = True
        self.last_rescored_fraction = float(rescored.mean())
        return probabilities

    def postprocess(self, model_outputs, decision=None, return_timestamps=False, top_k=None, inference=None):
        info = model_outputs[0]["recording"]
        order = np.argsort([int(output["window_index"]) for output in model_outputs])
        window_confidences = np.array(
            [float(model_outputs[i]["probabilities"].reshape(-1, 2)[0, 1]) for i in order], dtype=np.float64
        )
        silent_windows = sum(bool(output["window_is_silent"].reshape(-1)[0]) for output in model_outputs)
        decision = decision or DecisionParameters()
        self.last_rescored_fraction = None
        if any("rescoring_features" in output for output in model_outputs):
            window_confidences = self._rescored_in_float32(
                [model_outputs[i] for i in order], window_confidences, **dataclasses.asdict(decision)
            )
        return build_file_result(
            info,
            window_confidences,
            silent_windows,
            decision=decision,
            return_timestamps=return_timestamps,
            top_k=top_k,
            inference=inference,
        )
