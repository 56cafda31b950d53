# find_package(Torch), with libtorch's libraries taken only from the install that
# Torch_DIR names, so its headers and its libraries are always of one version.
#
# Why: TorchConfig.cmake finds libtorch.so, libc10.so, ... with
# find_library(... PATHS <its prefix>/lib), and Caffe2Config.cmake with
# find_dependency(... PATHS ...); both search the system folders before PATHS. On a machine with Debian's libtorch-dev (1.13) and a
# PyTorch 2.x install, a build configured for 2.x linked /usr/lib/.../libtorch.so.
# Here those cache variables are set first, from the install's own folder, so
# TorchConfig's searches never run, and every libtorch library the result lists
# is checked to come from that folder.
#
# Sets SDXL_TORCH_LIBRARY_DIR, plus everything find_package(Torch) sets.

if(NOT Torch_DIR OR NOT EXISTS "${Torch_DIR}/TorchConfig.cmake")
  message(FATAL_ERROR "Torch_DIR must be the folder holding TorchConfig.cmake (got '${Torch_DIR}'); "
                      "`npm run build:native` finds it from LIBTORCH_DIR, Python's torch or Debian's libtorch-dev")
endif()

# The install's library folder: the nearest folder at or above Torch_DIR that holds
# libtorch itself (Debian: /usr/lib/<arch>) or whose lib/ does (PyTorch: torch/lib,
# an unpacked libtorch: libtorch/lib).
set(_sdxl_torch_so "${CMAKE_SHARED_LIBRARY_PREFIX}torch${CMAKE_SHARED_LIBRARY_SUFFIX}")
set(SDXL_TORCH_LIBRARY_DIR "")
set(_sdxl_dir "${Torch_DIR}")
while(NOT SDXL_TORCH_LIBRARY_DIR)
  if(EXISTS "${_sdxl_dir}/${_sdxl_torch_so}")
    set(SDXL_TORCH_LIBRARY_DIR "${_sdxl_dir}")
  elseif(EXISTS "${_sdxl_dir}/lib/${_sdxl_torch_so}")
    set(SDXL_TORCH_LIBRARY_DIR "${_sdxl_dir}/lib")
  else()
    get_filename_component(_sdxl_parent "${_sdxl_dir}" DIRECTORY)
    if(_sdxl_parent STREQUAL _sdxl_dir)
      message(FATAL_ERROR "no ${_sdxl_torch_so} in any folder above ${Torch_DIR} (nor in their lib/): "
                          "that libtorch install has headers and CMake files but no libraries")
    endif()
    set(_sdxl_dir "${_sdxl_parent}")
  endif()
endwhile()

# TorchConfig.cmake loads Caffe2Config.cmake (which defines the torch, torch_cpu and c10
# targets) with find_dependency(Caffe2 PATHS <its folder>), which also searches the system
# first: on Debian with libtorch-dev, a PyTorch 2.x's TorchConfig got 1.13's targets.
get_filename_component(_sdxl_caffe2_dir "${Torch_DIR}/../Caffe2" ABSOLUTE)
if(NOT EXISTS "${_sdxl_caffe2_dir}/Caffe2Config.cmake")
  message(FATAL_ERROR "no Caffe2Config.cmake beside ${Torch_DIR} (looked in ${_sdxl_caffe2_dir})")
endif()
set(Caffe2_DIR "${_sdxl_caffe2_dir}" CACHE PATH "Caffe2Config.cmake of the libtorch in Torch_DIR" FORCE)

# The find_library variables of TorchConfig.cmake (1.13 to 2.14), found only in that folder.
# c10_cuda exists in CUDA builds only, kineto only where it is not linked in statically.
foreach(_sdxl_entry TORCH_LIBRARY=torch c10_LIBRARY=c10 C10_CUDA_LIBRARY=c10_cuda kineto_LIBRARY=kineto)
  string(REPLACE "=" ";" _sdxl_pair "${_sdxl_entry}")
  list(GET _sdxl_pair 0 _sdxl_var)
  list(GET _sdxl_pair 1 _sdxl_name)
  unset(${_sdxl_var} CACHE) # a build folder configured before against another install
  find_library(${_sdxl_var} ${_sdxl_name} PATHS "${SDXL_TORCH_LIBRARY_DIR}" NO_DEFAULT_PATH)
endforeach()

find_package(Torch REQUIRED CONFIG)

# Every libtorch library in the link, as a file or as an imported target, must be from that folder.
set(_sdxl_torch_files "")
foreach(_sdxl_item IN LISTS TORCH_LIBRARIES)
  if(IS_ABSOLUTE "${_sdxl_item}")
    list(APPEND _sdxl_torch_files "${_sdxl_item}")
  endif()
endforeach()
foreach(_sdxl_target torch torch_cpu torch_cuda c10 c10_cuda)
  if(TARGET ${_sdxl_target})
    get_target_property(_sdxl_configs ${_sdxl_target} IMPORTED_CONFIGURATIONS)
    foreach(_sdxl_config IN LISTS _sdxl_configs)
      get_target_property(_sdxl_location ${_sdxl_target} IMPORTED_LOCATION_${_sdxl_config})
      if(_sdxl_location)
        list(APPEND _sdxl_torch_files "${_sdxl_location}")
      endif()
    endforeach()
  endif()
endforeach()
get_filename_component(_sdxl_expected "${SDXL_TORCH_LIBRARY_DIR}" REALPATH)
foreach(_sdxl_file IN LISTS _sdxl_torch_files)
  get_filename_component(_sdxl_name "${_sdxl_file}" NAME)
  if(NOT _sdxl_name MATCHES "^${CMAKE_SHARED_LIBRARY_PREFIX}(torch|c10|kineto|caffe2)")
    continue() # CUDA's, the system's: not libtorch's own
  endif()
  get_filename_component(_sdxl_dir "${_sdxl_file}" DIRECTORY)
  get_filename_component(_sdxl_dir "${_sdxl_dir}" REALPATH)
  if(NOT _sdxl_dir STREQUAL _sdxl_expected)
    message(FATAL_ERROR "libtorch ${Torch_VERSION} from ${Torch_DIR} would link ${_sdxl_file}, "
                        "which is not in its own library folder ${SDXL_TORCH_LIBRARY_DIR}: headers of one "
                        "libtorch with libraries of another. Remove the stale entry from the CMake cache "
                        "(or the build folder) and configure again.")
  endif()
endforeach()
