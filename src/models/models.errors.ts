import { TwinError } from "../errors.ts";

/** A GGUF file cannot be read for its facts (architecture, shapes, tokens). */
export class GgufFactsError extends TwinError {}

/** The model registry refused: an unknown model, a duplicate, a missing file. */
export class ModelRegistryError extends TwinError {}

/** The model catalogue (catalogue.yaml) is malformed, lacks a name, or an entry cannot be used. */
export class CatalogueError extends TwinError {}

/** What `twin model pull` was given is neither a catalogue name nor an hf: URI it can fetch. */
export class ModelSourceError extends TwinError {}

/** The model hub (or the mirror in HF_ENDPOINT) cannot be reached, or fails: a network error or a 5xx. */
export class HubUnreachableError extends TwinError {}

/** The hub refused a gated or private repository (401/403): its licence is not accepted, or HF_TOKEN is missing. */
export class HubAccessError extends TwinError {}

/** The hub has no such repository, file or quantization. */
export class HubNotFoundError extends TwinError {}

/** The model store's disk has less free space than a pull needs; checked before anything downloads. */
export class DiskSpaceError extends TwinError {}

/** A downloaded file's size or sha256 is not what the hub's metadata says; the file was deleted. */
export class DownloadCorruptError extends TwinError {}

/** A pull was stopped (Ctrl-C); what was downloaded is kept, and the same command resumes it. */
export class PullInterruptedError extends TwinError {}

/** The HF weights for training could not be fetched (the trainer's fetch failed) or checked. */
export class WeightsError extends TwinError {}

/** The served GGUF and the HF weights are not the same model; the message names the first difference. */
export class PairMismatchError extends TwinError {}
