"""The one exception family a user can act on: the CLI prints it as one line, the app as a toast."""


class UserError(Exception):
    """Bad input or an unusable model pair, with a message that says what to change."""


MAX_PROMPT_CHARS = 2000


def checked_prompt(prompt: str | None, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """The prompt without surrounding blanks, or a UserError that says what is wrong with it."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise UserError("the prompt is empty: ask something about the video")
    if len(prompt) > max_chars:
        raise UserError(f"the prompt is {len(prompt)} characters long; keep it under {max_chars}")
    return prompt


def memory_errors() -> tuple[type[BaseException], ...]:
    """What running out of memory raises: CUDA's allocator error, or Python's on the host."""
    import torch

    return (torch.OutOfMemoryError, MemoryError)


def out_of_memory(hint: str) -> UserError:
    """Free what a failed run left behind and say what to change.

    Call it after leaving the ``except`` block: until then the traceback holds the run's frames, and
    with them the tensors that filled the memory.
    """
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return UserError(f"out of memory: {hint}")
