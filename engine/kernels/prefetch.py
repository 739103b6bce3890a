"""A software prefetch for Numba kernels (LLVM's llvm.prefetch): start loading a cache line that a later
iteration will read, so that several independent cache misses overlap instead of following one another."""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch_address(typingctx, address):
    """Prefetch the cache line at `address` (an integer, e.g. array.ctypes.data + byte offset) for reading."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        byte_pointer = ir.IntType(8).as_pointer()
        pointer = builder.inttoptr(args[0], byte_pointer)
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0i8")
        # read (0), high temporal locality (3), data cache (1)
        builder.call(function, [pointer, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(address), codegen
