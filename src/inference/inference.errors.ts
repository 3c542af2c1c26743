import { TwinError } from "../errors.ts";

/** A name or id given for a conversation matches nobody in the history. */
export class UnknownPersonError extends TwinError {}

/** An adapter was trained on another base model than the one loaded. */
export class AdapterMismatchError extends TwinError {}

/** The model produced no message at all. */
export class EmptyReplyError extends TwinError {}

/** The model only repeated one of the conversation's recent replies, resampled too. */
export class RepeatedReplyError extends TwinError {}

/** Even the shortest prompt does not fit the context window. */
export class PromptTooLongError extends TwinError {}

/** A stored model or adapter file is missing or not what the database says. */
export class StoredModelError extends TwinError {}

/** TWIN_GPU names a GPU backend that node-llama-cpp cannot use on this machine. */
export class GpuUnavailableError extends TwinError {}
