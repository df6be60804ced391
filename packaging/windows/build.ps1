<#
.SYNOPSIS
  Build the frozen Windows agent: dist\windows\certfleet-agent\ (certfleet-agent.exe and
  certfleet-agent-service.exe) and a zip of it, with PyInstaller.

.DESCRIPTION
  NOT RUN ON WINDOWS YET: see packaging\windows\README.md for what has and has not been run.

  Makes a virtual environment in build\windows\venv with the given Python (3.11 or newer, 64-bit),
  installs certfleet from this repository (the agent's dependencies only), pywin32 and PyInstaller,
  runs packaging\windows\certfleet-agent.spec, smoke-tests both programs (--version, and the
  service's `status`, which must answer without an installed service), and zips the folder.

  Needs: Python 3.11+ x64 (python.org or the py launcher), the "Desktop development with C++"
  workload of the Visual Studio Build Tools (pyjks pulls in twofish, built from source), and
  network access to PyPI (or a configured pip index).

.PARAMETER Python
  The interpreter to make the build environment with (default: "py -3.11" through the launcher).

.PARAMETER OutDir
  Where the folder and the zip go (default: dist\windows in the repository).

.EXAMPLE
  powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1
#>
[CmdletBinding()]
param(
    [string]$Python = "",
    [string]$OutDir = "",
    [switch]$Clean
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

$Repo = (Resolve-Path (Join-Path $PSScriptRoot "..\..")).Path
if (-not $OutDir) { $OutDir = Join-Path $Repo "dist\windows" }
$Work = Join-Path $Repo "build\windows"
$Venv = Join-Path $Work "venv"
$VenvPython = Join-Path $Venv "Scripts\python.exe"
$Spec = Join-Path $PSScriptRoot "certfleet-agent.spec"

function Invoke-Native {
    # Run a program with an argument array (no command line is assembled from strings) and stop
    # on a non-zero exit code.
    param([Parameter(Mandatory)][string]$FilePath, [string[]]$Arguments = @())
    & $FilePath @Arguments
    if ($LASTEXITCODE -ne 0) {
        throw "$FilePath $($Arguments -join ' ') failed with exit code $LASTEXITCODE"
    }
}

if ($Clean -and (Test-Path $Work)) { Remove-Item -Recurse -Force $Work }
New-Item -ItemType Directory -Force -Path $Work, $OutDir | Out-Null

# ------------------------------------------------------------------ the build environment
if (-not (Test-Path $VenvPython)) {
    if ($Python) {
        Invoke-Native $Python @("-m", "venv", $Venv)
    } else {
        Invoke-Native "py" @("-3.11", "-m", "venv", $Venv)
    }
}
$ver = & $VenvPython -c "import sys, struct; print('%d.%d %d' % (sys.version_info[0], sys.version_info[1], struct.calcsize('P') * 8))"
$parts = $ver.Split(" ")
if ([version]$parts[0] -lt [version]"3.11" -or $parts[1] -ne "64") {
    throw "the build needs a 64-bit Python 3.11 or newer; $VenvPython is Python $($parts[0]), $($parts[1])-bit"
}
Write-Host "[build] Python $($parts[0]) ($($parts[1])-bit) in $Venv"

Invoke-Native $VenvPython @("-m", "pip", "install", "--quiet", "--upgrade", "pip")
# certfleet without extras: the agent's dependencies (grpcio, protobuf, cryptography, pyjks, psutil)
Invoke-Native $VenvPython @("-m", "pip", "install", "--quiet", $Repo, "pywin32>=306", "pyinstaller>=6.10,<7")
$version = & $VenvPython -c "import agent; print(agent.__version__)"
if ($LASTEXITCODE -ne 0) { throw "certfleet is not importable in $Venv" }

# ------------------------------------------------------------------ freeze
Invoke-Native $VenvPython @("-m", "PyInstaller", "--noconfirm", "--clean",
    "--distpath", $OutDir, "--workpath", (Join-Path $Work "pyinstaller"), $Spec)
$Bundle = Join-Path $OutDir "certfleet-agent"
$AgentExe = Join-Path $Bundle "certfleet-agent.exe"
$ServiceExe = Join-Path $Bundle "certfleet-agent-service.exe"

# ------------------------------------------------------------------ smoke test
Invoke-Native $AgentExe @("--version")
Invoke-Native $ServiceExe @("--version")
& $ServiceExe "status"
# 0 running, 3 not running / not installed: both mean the pywin32 boundary loaded and answered
if ($LASTEXITCODE -ne 0 -and $LASTEXITCODE -ne 3) {
    throw "certfleet-agent-service.exe status failed with exit code $LASTEXITCODE (pywin32 not frozen in?)"
}
$sample = Join-Path $Work "smoke.toml"
Set-Content -Path $sample -Encoding UTF8 -Value @(
    "[agent]",
    "data_dir = '$(Join-Path $Work "smoke-data")'",
    "[[store]]",
    "name = 'windows-certs'",
    "type = 'auto'",
    "paths = ['$(Join-Path $env:SystemRoot "System32\*.cer")']"
)
Invoke-Native $AgentExe @("scan", "--config", $sample, "--format", "json") | Out-Null

# ------------------------------------------------------------------ zip
$zip = Join-Path $OutDir "certfleet-agent-windows-$version-amd64.zip"
if (Test-Path $zip) { Remove-Item -Force $zip }
Compress-Archive -Path $Bundle, (Join-Path $PSScriptRoot "install.ps1") -DestinationPath $zip
Write-Host "[build] $Bundle"
Write-Host "[build] $zip"
