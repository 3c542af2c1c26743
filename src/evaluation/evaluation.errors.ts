import { TwinError } from "../errors.ts";

/** A held-out example is not in the training format. */
export class ExampleFormatError extends TwinError {}

/** An evaluation cannot run: no dataset, no held-out turns, no model. */
export class EvaluationError extends TwinError {}
