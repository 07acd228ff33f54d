import ltxvfs from './index.js';

export const { getLoadablePath, load, register, setDefaultVfs, lastError, open, fork, SETTINGS } = ltxvfs;
export default ltxvfs;
