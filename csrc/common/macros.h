// Portability macros shared by the C++ (CPU) and CUDA translation units.
#pragma once

#if defined(__CUDACC__)
#define PK_HD __host__ __device__ __forceinline__
#else
#define PK_HD inline
#endif
